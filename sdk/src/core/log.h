// The library's only way to say something outside a status: a message goes
// to the application's log callback when one is set (apps on Android and iOS
// never see stderr), else warnings and errors go to stderr.
#pragma once
#include "edgekv.h"

namespace ekv {

void log_message(ekv_log_level level, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

}  // namespace ekv
