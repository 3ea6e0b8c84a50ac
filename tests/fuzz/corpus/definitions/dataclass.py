from dataclasses import dataclass, field

@dataclass(frozen=True)
class P:
    x: int = field(default=0)
    tags: list = field(default_factory=list)
    m: dict = dataclasses.field(default_factory=dict, repr=False)
