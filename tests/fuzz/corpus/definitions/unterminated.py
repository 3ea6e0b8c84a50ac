x = field(default=0
T = TypeVar('T'
