/* time.c — fio.sleep and fio.now: the loop's timers seen from Lua. */
#include <math.h>

#include "core/loop.h"
#include "lib/lib.h"
#include "util/clock.h"

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  fio_wait_end(L, (fio_fiber *)ctx);
  return 0;
}

/* fio.sleep(s): suspend for s seconds (a float); s <= 0 yields once. */
static int l_sleep(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s == s, 1, "not a number");
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  if (s <= 0) {
    w->wait = FIO_W_YIELD;
  } else {
    fio_timer_arm_in(L, loop, w, s);
    w->wait = FIO_W_SLEEP;
  }
  return fio_block(loop, L, w, sleep_k);
}

/* fio.now(): the monotonic clock in seconds. */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)fio_now_ns() / 1e9);
  return 1;
}

static const luaL_Reg time_funcs[] = {
    {"sleep", l_sleep}, {"now", l_now}, {NULL, NULL}};

/* Module table at -2, loop userdata at -1. */
void fio_open_time(lua_State *L) {
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, time_funcs, 1);
  lua_pop(L, 1);
}
