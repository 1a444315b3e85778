/* SPDX-License-Identifier: MIT
 * Everything the balancer's request path declares, for files that use all
 * of it. Each part has its own header: server.h (process and workers),
 * conn.h (client side), route.h, upstream.h, relay.h, admin.h. */
#ifndef LLAMALB_PROXY_H
#define LLAMALB_PROXY_H

#include "admin.h"
#include "conn.h"
#include "relay.h"
#include "route.h"
#include "server.h"
#include "upstream.h"

#endif
