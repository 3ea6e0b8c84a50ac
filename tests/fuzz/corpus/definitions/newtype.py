UserId = NewType('UserId', int)
Ts = TypeVarTuple('Ts')
