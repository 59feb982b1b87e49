/* The public structs only ever grow at the end: every v1 field keeps its
 * offset and size, no struct is smaller than in v1, and every field
 * appended since lies past the v1 struct, in order (layout_fields.h).
 * Exit 0 = pass. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "layout_fields.h"

extern const size_t ekv_layout_v1_fields[], ekv_layout_now_fields[];
extern const size_t ekv_layout_v1_structs[], ekv_layout_now_structs[];
extern const size_t ekv_layout_v1_size_of_later[], ekv_layout_now_later[];

#define EKV_FIELD_NAME(s, f) #s "." #f,
#define EKV_STRUCT_NAME(s) #s,
static const char *const field_names[] = {EKV_V1_FIELDS(EKV_FIELD_NAME) NULL};
static const char *const struct_names[] = {EKV_V1_STRUCTS(EKV_STRUCT_NAME) NULL};
#define EKV_LATER_STRUCT(s, f) #s,
#define EKV_LATER_NAME(s, f) #s "." #f,
static const char *const later_structs[] = {EKV_LATER_FIELDS(EKV_LATER_STRUCT) NULL};
static const char *const later_names[] = {EKV_LATER_FIELDS(EKV_LATER_NAME) NULL};

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
    int later = 0;
    for (int i = 0; later_names[i]; ++i, ++later) {
        const size_t offset = ekv_layout_now_later[2 * i], v1_end = ekv_layout_v1_size_of_later[i];
        if (offset < v1_end) {
            printf("FAIL %s at offset %zu: inside the v1 struct (%zu bytes)\n", later_names[i], offset, v1_end);
            ++failures;
        }
        if (i > 0 && strcmp(later_structs[i], later_structs[i - 1]) == 0 && offset <= ekv_layout_now_later[2 * i - 2]) {
            printf("FAIL %s at offset %zu: not after %s\n", later_names[i], offset, later_names[i - 1]);
            ++failures;
        }
    }
    printf("%d fields of %d structs and %d later fields checked, %d failures\n", fields, structs, later, failures);
    return failures == 0 && fields > 80 && later >= 9 ? 0 : 1;
}
