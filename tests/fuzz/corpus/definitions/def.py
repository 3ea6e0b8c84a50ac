def f(x, y=2, *a, k: int = -1, **kw) -> dict[str, int]:
    print(x)
    return g(x)
