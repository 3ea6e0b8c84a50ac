x: Optional[int] = None
y: Annotated[int, 'meters'] = 3
z: Annotated[int, check()] = 1
