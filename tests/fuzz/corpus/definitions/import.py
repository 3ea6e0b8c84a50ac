import os
from math import (sqrt,
    pi)
