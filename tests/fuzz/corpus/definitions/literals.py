N = 10
A = B = 'x'
lo, hi = 0.1, -0.9
P: dict = {'k': [1, 2], 'n': None}
S = {1, 2}
T = (1,)
