@dataclass
class P:
    x: int = field(default=open('f'))
