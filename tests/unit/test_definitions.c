/*
 * test_definitions.c - the widened rule for cells that only define
 * (definitions.h): each form it accepts beyond imports, defs, classes and
 * literals (dataclass fields, enum.auto, TypeVar and its kin, namedtuple,
 * type aliases, typed annotations, the usual decorators, every kind of
 * literal) is checked with a cell it accepts and near misses it must refuse,
 * each refusal with its reason.  test_journal.c holds the rule's original
 * cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/definitions.h"

typedef struct refused {
    const char *code, *says;
} refused;

static void accepts(const char *const *yes, size_t n)
{
    char why[CELLAR_DEFINITIONS_WHY_MAX];
    for (size_t i = 0; i < n; i++) {
        bool ok = cellar_definitions_only(yes[i], strlen(yes[i]), why);
        if (!ok)
            print_error("expected a definition cell: %s\n  because: %s\n", yes[i], why);
        assert_true(ok);
    }
}

static void refuses(const refused *no, size_t n)
{
    char why[CELLAR_DEFINITIONS_WHY_MAX];
    for (size_t i = 0; i < n; i++) {
        bool ok = cellar_definitions_only(no[i].code, strlen(no[i].code), why);
        if (ok || !strstr(why, no[i].says))
            print_error("cell %zu: %s\n  why: %s (wanted: %s)\n", i, no[i].code,
                        ok ? "(accepted)" : why, no[i].says);
        assert_false(ok);
        assert_non_null(strstr(why, no[i].says));
    }
}

#define N(a) (sizeof(a) / sizeof *(a))

static void test_dataclass_fields(void **state)
{
    (void)state;
    const char *yes[] = {
        "from dataclasses import dataclass, field\n",
        ("@dataclass\nclass P:\n    x: int = field(default=0)\n"
         "    tags: list = field(default_factory=list)\n"
         "    m: dict = dataclasses.field(default_factory=collections.OrderedDict,\n"
         "                                repr=False, compare=False)\n"
         "    y: float = field(default=-1.5, metadata={'unit': 'm'}, kw_only=True)\n"
         "    z: int = field()\n"),
        "@dataclass(frozen=True, order=True)\nclass Q:\n    a: int = 1\n",
        "class Color(enum.Enum):\n    RED = auto()\n    GREEN = enum.auto()\n",
        "class One: x = field(default=2)\n",
    };
    accepts(yes, N(yes));
    const refused no[] = {
        {"@dataclass\nclass P:\n    x: int = field(default=open('f'))\n",
         "assigns the result of a call"},
        {"@dataclass\nclass P:\n    x: list = field(default_factory=make())\n", "call"},
        {"@dataclass\nclass P:\n    x: list = field(default_factory=lambda: load())\n",
         "call"},
        {"@dataclass\nclass P:\n    x: int = field(0)\n", "call"},           /* positional */
        {"@dataclass\nclass P:\n    x: int = field(init=f())\n", "call"},
        {"@dataclass\nclass P:\n    x: int = field(default=0, bogus=1)\n", "call"},
        {"@dataclass\nclass P:\n    x: int = field(default=0)()\n", "call"}, /* calls it */
        {"@dataclass\nclass P:\n    x: int = field(default=0) + g(1)\n", "call"},
        {"@dataclass\nclass P:\n    x: int = mymod.field(default=0)\n", "call"},
        {"@dataclass\nclass P:\n    x: int = a.dataclasses.field(default=0)\n", "call"},
        {"x = field(default=0)\n", "assigns the result of a call"}, /* not in a class */
        {"RED = auto()\n", "call"},
        {"class C(enum.Enum):\n    RED = auto(1)\n", "call"},
        {"class C:\n    x = field(default=0\n", ""},
    };
    refuses(no, N(no));
}

static void test_typing_forms(void **state)
{
    (void)state;
    const char *yes[] = {
        "from typing import Annotated, Optional\n",
        "x: Optional[int] = None\ny: Annotated[int, 'meters'] = 3\n",
        ("def f(a: typing.Annotated[int, 'x'] = 1, b: Optional[str] = None) -> None:\n"
         "    pass\n"),
        "Vector = list[float]\nMaybe = Optional[int]\nPair = typing.Tuple[int, int]\n",
        "Handler = Callable[[int, str], Dict[str, List[int]]]\n",
        "Mode = Literal['r', 'w', -1]\nAny2 = Union[int, None, 'Box', np.ndarray]\n",
        "Opt = Optional[int | None]\nF = Callable[..., int]\n",
        "T = TypeVar('T')\nK = typing.TypeVar('K', int, str)\n",
        "B = TypeVar('B', bound='Box', covariant=True)\nP = ParamSpec('P')\n",
        "UserId = NewType('UserId', int)\nTs = TypeVarTuple('Ts')\n",
        "Point = namedtuple('Point', ['x', 'y'])\n",
        "Point3 = collections.namedtuple('Point3', 'x y z', defaults=(0,))\n",
        "class Box:\n    size: ClassVar[int] = 3\n    T = TypeVar('T')\n",
    };
    accepts(yes, N(yes));
    const refused no[] = {
        {"x: Annotated[int, check()] = 1\n", "other than names"},
        {"x = Optional[load()]\n", "call"},
        {"x = table[0]\n", "not a literal"},              /* not a generic */
        {"x = df.loc['a']\n", "not a literal"},
        {"x = List[int][0]\n", "not a literal"},
        {"x = Dict[str, d[k]]\n", "not a literal"},
        {"x = Optional[int] | other\n", "not a literal"},
        {"x = int | None\n", "not a literal"},            /* `|` on any object: computes */
        {"T = TypeVar(name)\n", "call"},
        {"T = TypeVar(f'T{i}')\n", "call"},
        {"T = TypeVar('T', bound=make())\n", "call"},
        {"T = TypeVar()\n", "call"},
        {"T = other.TypeVar('T')\n", "call"},
        {"U = NewType('U', base())\n", "call"},
        {"P = namedtuple('P', fields)\n", "call"},
        {"P = namedtuple('P', 'x', verbose=print('hi'))\n", "call"},
        {"P = namedtuple(*args)\n", "call"},
    };
    refuses(no, N(no));
}

static void test_decorators(void **state)
{
    (void)state;
    const char *yes[] = {
        "@functools.cache\ndef f(n):\n    return n\n",
        "@functools.lru_cache(maxsize=128)\ndef f(n):\n    return n\n",
        "@lru_cache(None)\ndef f(n):\n    return n\n",
        ("class A:\n    @staticmethod\n    def s():\n        pass\n"
         "    @classmethod\n    def c(cls):\n        pass\n"
         "    @property\n    def p(self):\n        return 1\n"
         "    @p.setter\n    def p(self, v):\n        pass\n"
         "    @functools.cached_property\n    def q(self):\n        return 2\n"),
        "@dataclass(frozen=True)\n@total_ordering\nclass V:\n    n: int = 0\n",
    };
    accepts(yes, N(yes));
    const refused no[] = {
        {"@lru_cache(maxsize=size())\ndef f():\n    pass\n", "decorator that computes"},
        {"@registry[0]\ndef f():\n    pass\n", "decorator that computes"},
        {"@make()()\ndef f():\n    pass\n", "decorator that computes"},
        {"class A:\n    @staticmethod\n    x = 1\n", "does not parse"},
    };
    refuses(no, N(no));
}

static void test_literals(void **state)
{
    (void)state;
    const char *yes[] = {
        "__all__ = ['f', 'g', 'Box']\n",
        "T = (1, 2)\nE = ()\nO = (1,)\nD = {}\nS = {1, 2}\nN = -3\nF = -1.5e-3\n",
        "NESTED = {'a': (1, -2), 'b': [{3, 4}], 'c': {'d': None}}\n",
        "B = b'bytes'\nC = 1j\nR = r'raw'\nJ = 'a' 'b'\nH = 0xff\nU = 1_000\n",
        "X = +1\nY = -(-1)\nZ = 1 - -1\n",
    };
    accepts(yes, N(yes));
    const refused no[] = {
        {"__all__ += ['h']\n", "is not a definition"}, /* twice is not once */
        {"__all__ = names()\n", "call"},
        {"__all__ = [n for n in names]\n", "not a literal"},
        {"X = 10 ** 100\n", "not a literal"},
        {"X = [0] * 10\n", "not a literal"},
        {"X = {**other}\n", "not a literal"},
        {"X = (1, y)\n", "not a literal"},
        {"X = -y\n", "not a literal"},
    };
    refuses(no, N(no));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataclass_fields),
        cmocka_unit_test(test_typing_forms),
        cmocka_unit_test(test_decorators),
        cmocka_unit_test(test_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
