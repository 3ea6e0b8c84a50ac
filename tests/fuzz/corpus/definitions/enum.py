class Color(enum.Enum):
    RED = auto()
    GREEN = enum.auto()
