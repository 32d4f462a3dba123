/*
 * A stand-in for bcryptprimitives.dll, which Wine 8 as packaged by Debian lacks.
 *
 * Rust's standard library (1.78 and later) gets its random seeds (HashMap keys, ...) from
 * ProcessPrng in bcryptprimitives.dll at start-up; without the DLL no Rust program starts.
 * Placed beside a test executable, this DLL provides ProcessPrng on top of RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. tests/run-windows.sh builds it; it is
 * never shipped, only used to run the Windows test executables under Wine.
 */
#include <windows.h>

/* RtlGenRandom: exported by advapi32.dll under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills `data` with `len` random bytes; always succeeds, as the real one documents. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
