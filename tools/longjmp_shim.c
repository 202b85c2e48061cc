/* longjmp_shim.c — for the ThreadSanitizer run of the specs (make check).
 *
 * Debian's lua5.4 is built with _FORTIFY_SOURCE, so every error and every
 * coroutine yield across a C boundary leaves through __longjmp_chk, which
 * gcc 12's libtsan does not intercept: TSan never learns that the stack was
 * unwound, and after some tens of thousands of yields its per-thread
 * bookkeeping of the stack overflows and the process dies. Preloaded after
 * libtsan.so, this library defines __longjmp_chk as a plain longjmp, which
 * then resolves to TSan's interceptor. (The checks __longjmp_chk adds are
 * about jumping into a dead frame, which Lua never does.) */
#include <setjmp.h>

void __longjmp_chk(jmp_buf env, int val) __attribute__((noreturn));
void __longjmp_chk(jmp_buf env, int val) { longjmp(env, val); }
