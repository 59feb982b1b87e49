/* Links against an installed edgekv and checks the run-time version. */
#include <stdio.h>
#include <string.h>

#include <edgekv.h>

int main(void) {
    ekv_cache_type t;
    if (ekv_version_number() != EKV_VERSION_NUMBER) {
        fprintf(stderr, "header %d but library %d\n", EKV_VERSION_NUMBER, ekv_version_number());
        return 1;
    }
    if (ekv_cache_type_from_name("static", &t) != EKV_OK || t != EKV_CACHE_STATIC) return 1;
    printf("edgekv %s OK\n", ekv_version());
    return strcmp(ekv_version(), "0.1.0") == 0 ? 0 : 1;
}
