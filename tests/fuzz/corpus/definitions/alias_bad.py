x = Dict[str, d[k]]
y = List[int][0]
z = int | None
