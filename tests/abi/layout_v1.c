/* Offsets, sizes and struct sizes of the v1 fields under the v1 header. */
#include <stddef.h>

#include "edgekv.h"
#include "layout_fields.h"

#define EKV_FIELD_OFFSET(s, f) offsetof(s, f), sizeof(((s *)0)->f),
#define EKV_STRUCT_SIZE(s) sizeof(s),
const size_t ekv_layout_v1_fields[] = {EKV_V1_FIELDS(EKV_FIELD_OFFSET) 0};
const size_t ekv_layout_v1_structs[] = {EKV_V1_STRUCTS(EKV_STRUCT_SIZE) 0};
/* The v1 size of the struct of each later field. */
#define EKV_V1_SIZE_OF(s, f) sizeof(s),
const size_t ekv_layout_v1_size_of_later[] = {EKV_LATER_FIELDS(EKV_V1_SIZE_OF) 0};
