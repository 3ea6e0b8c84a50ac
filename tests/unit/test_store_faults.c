/* placeholder, filled below */
#include "store_testlib.h"
int main(void) { return 0; }
