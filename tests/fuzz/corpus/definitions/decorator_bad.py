@make()()
def f():
    pass
