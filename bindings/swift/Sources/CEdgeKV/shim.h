/* Imports the installed public C ABI (<prefix>/include/edgekv.h). */
#ifndef EDGEKV_SWIFT_SHIM_H
#define EDGEKV_SWIFT_SHIM_H
#include <edgekv.h>
#endif
