@dataclass
class P:
    x: list = field(default_factory=make())
