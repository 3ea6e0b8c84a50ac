import os
x = load()
print(x)
for i in range(3):
    pass
