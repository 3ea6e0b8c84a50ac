class A(Base, metaclass=Meta):
    '''doc'''
    X = 1
    y: int = 0
    def m(self):
        return compute()
