class A:
    @staticmethod
    def s():
        pass
    @property
    def p(self):
        return 1
    @p.setter
    def p(self, v):
        pass

@functools.lru_cache(maxsize=128)
def f(n):
    return n
