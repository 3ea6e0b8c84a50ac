T = TypeVar('T')
K = typing.TypeVar('K', int, str)
B = TypeVar('B', bound='Box', covariant=True)
P = ParamSpec('P')
