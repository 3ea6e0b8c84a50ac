Point = collections.namedtuple('Point', 'x y z', defaults=(0,))
