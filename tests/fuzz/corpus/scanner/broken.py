def ok(): pass
x = (1,
def broken(:
  s = 'unterminated
