/* The public structs only ever grow at the end: every v1 field keeps its
 * offset and size, and no struct is smaller than in v1 (layout_fields.h).
 * Exit 0 = pass. */
#include <stddef.h>
#include <stdio.h>

#include "layout_fields.h"

extern const size_t ekv_layout_v1_fields[], ekv_layout_now_fields[];
extern const size_t ekv_layout_v1_structs[], ekv_layout_now_structs[];

#define EKV_FIELD_NAME(s, f) #s "." #f,
#define EKV_STRUCT_NAME(s) #s,
static const char *const field_names[] = {EKV_V1_FIELDS(EKV_FIELD_NAME) NULL};
static const char *const struct_names[] = {EKV_V1_STRUCTS(EKV_STRUCT_NAME) NULL};

int main(void) {
    int failures = 0, fields = 0, structs = 0;
    for (int i = 0; field_names[i]; ++i, ++fields) {
        if (ekv_layout_v1_fields[2 * i] != ekv_layout_now_fields[2 * i] ||
            ekv_layout_v1_fields[2 * i + 1] != ekv_layout_now_fields[2 * i + 1]) {
            printf("FAIL %s: v1 offset %zu size %zu, now offset %zu size %zu\n", field_names[i],
                   ekv_layout_v1_fields[2 * i], ekv_layout_v1_fields[2 * i + 1], ekv_layout_now_fields[2 * i],
                   ekv_layout_now_fields[2 * i + 1]);
            ++failures;
        }
    }
    for (int i = 0; struct_names[i]; ++i, ++structs) {
        if (ekv_layout_now_structs[i] < ekv_layout_v1_structs[i]) {
            printf("FAIL %s shrank: v1 %zu bytes, now %zu\n", struct_names[i], ekv_layout_v1_structs[i],
                   ekv_layout_now_structs[i]);
            ++failures;
        }
    }
    printf("%d fields of %d structs checked, %d failures\n", fields, structs, failures);
    return failures == 0 && fields > 80 ? 0 : 1;
}
