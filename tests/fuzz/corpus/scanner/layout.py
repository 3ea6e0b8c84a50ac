%%time
async def h[T](x: T):
	if x:
		return {1: [2, (3,)]}
def i(): pass