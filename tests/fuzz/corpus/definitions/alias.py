Vector = list[float]
Maybe = Optional[int]
Handler = Callable[[int, str], Dict[str, List[int]]]
Mode = Literal['r', -1]
