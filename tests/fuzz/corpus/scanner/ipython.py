%matplotlib inline
x = !ls
a, b = %who_ls
obj?
!echo "it's"
def g():
    %time h()
