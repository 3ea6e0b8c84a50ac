@dec(1,
     2)
def f(a, b=lambda x=1, y=2: x, /, *args, k: int = 3, **kw) -> int:
    """doc"""
    return f"{a["k"]:>{w}}"
