/* Unit tests for error.c: messages are formatted, truncated and cleared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/error.h"

static void test_set_returns_code_and_formats(void **state)
{
    (void)state;
    cellar_error err;
    assert_int_equal(cellar_error_set(&err, CELLAR_ENOTFOUND, "no node %s", "f"),
                     CELLAR_ENOTFOUND);
    assert_int_equal(err.code, CELLAR_ENOTFOUND);
    assert_string_equal(err.message, "no node f");
    cellar_error_clear(&err);
    assert_int_equal(err.code, CELLAR_OK);
    assert_string_equal(err.message, "");
}

static void test_long_message_truncates(void **state)
{
    (void)state;
    cellar_error err;
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cellar_error_set(&err, CELLAR_EIO, "%s", big);
    assert_int_equal(strlen(err.message), CELLAR_ERROR_MESSAGE_MAX - 1);
}

static void test_null_error_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(cellar_error_set(NULL, CELLAR_EINVAL, "ignored"), CELLAR_EINVAL);
    cellar_error_clear(NULL);
    assert_string_equal(cellar_status_name(CELLAR_ECORRUPT), "corrupt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_returns_code_and_formats),
        cmocka_unit_test(test_long_message_truncates),
        cmocka_unit_test(test_null_error_is_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
