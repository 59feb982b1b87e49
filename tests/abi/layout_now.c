/* Offsets, sizes and struct sizes of the v1 fields under the now header. */
#include <stddef.h>

#include "edgekv.h"
#include "layout_fields.h"

#define EKV_FIELD_OFFSET(s, f) offsetof(s, f), sizeof(((s *)0)->f),
#define EKV_STRUCT_SIZE(s) sizeof(s),
const size_t ekv_layout_now_fields[] = {EKV_V1_FIELDS(EKV_FIELD_OFFSET) 0};
const size_t ekv_layout_now_structs[] = {EKV_V1_STRUCTS(EKV_STRUCT_SIZE) 0};
const size_t ekv_layout_now_later[] = {EKV_LATER_FIELDS(EKV_FIELD_OFFSET) 0};
