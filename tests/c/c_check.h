/*
 * c_check.h - the check macros of the C ABI tests: stop at the first failed
 * check with file:line, the expression and ekv_last_error(); SKIP() for a
 * check that cannot run here.
 */
#ifndef EKV_TEST_C_CHECK_H
#define EKV_TEST_C_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#include "edgekv.h"

static void die_at(const char *file, int line, const char *what, const char *detail) {
    fprintf(stderr, "%s:%d: FAILED: %s%s%s\n  last error: '%s'\n", file, line, what, detail ? " - " : "",
            detail ? detail : "", ekv_last_error());
    exit(1);
}
#define die(line, what, detail) die_at(__FILE__, line, what, detail)

#define CHECK(cond) \
    do { if (!(cond)) die(__LINE__, #cond, NULL); } while (0)

#define EXPECT_STATUS(call, expected)                                                   \
    do {                                                                                \
        ekv_status st_ = (call);                                                        \
        if (st_ != (expected)) {                                                        \
            char msg_[256];                                                             \
            sprintf(msg_, "got %d (%s), expected %d (%s)", (int)st_, ekv_status_string(st_), \
                    (int)(expected), ekv_status_string(expected));                      \
            die(__LINE__, #call, msg_);                                                 \
        }                                                                               \
    } while (0)

#define OK(call) EXPECT_STATUS(call, EKV_OK)

/* A deliberate skip exits 77, the tests' SKIP_RETURN_CODE: ctest reports it as
 * skipped (and tools/test.sh fails on it), never as a pass. */
#define EKV_SKIP_EXIT_CODE 77
#define SKIP(why)                                                     \
    do {                                                              \
        printf("SKIPPED: %s\n", why);                                 \
        exit(EKV_SKIP_EXIT_CODE);                                     \
    } while (0)

static void section(const char *name) { printf("-- %s\n", name); fflush(stdout); }

#endif
