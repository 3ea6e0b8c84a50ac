s = rb'\d' + Rb"x" + f'{x!r:{w}.{p}}' + f'''{
  y # c
}''' + u'' + '''a
b'''
