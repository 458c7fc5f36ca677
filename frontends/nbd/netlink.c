/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * netlink.c: NBD_CMD_CONNECT, NBD_CMD_RECONFIGURE and NBD_CMD_DISCONNECT
 * over generic netlink.
 *
 * Each call uses a fresh netlink socket: these are rare control operations.
 * The kernel's errno is taken from its error message itself (an NL_CB_ERROR
 * callback), not from libnl's coarser error codes, so EBUSY and EPERM reach
 * the user as what they are.
 */
#include <errno.h>
#include <linux/nbd-netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <stdlib.h>

#include "nbd-proto.h"
#include "netlink.h"

struct nl_result {
	bool done;
	int error;
	bool have_index;
	uint32_t index;
};

/* libnl's own failures (no kernel errno) as an errno. */
static int nlerr_to_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case NLE_PERM:
	case NLE_NOACCESS:
		return -EPERM;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_AF_NOSUPPORT:
	case NLE_PROTO_MISMATCH:
		return -EAFNOSUPPORT;
	default:
		return -EIO;
	}
}

static void sock_freep(struct nl_sock **sk)
{
	if (*sk)
		nl_socket_free(*sk);
}

static void msg_freep(struct nl_msg **m)
{
	if (*m)
		nlmsg_free(*m);
}

static int open_socket(struct nl_sock **ret_sk, int *ret_family)
{
	struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	r = genl_connect(sk);
	if (r < 0) {
		nl_socket_free(sk);
		return nlerr_to_errno(r);
	}
	r = genl_ctrl_resolve(sk, NBD_GENL_FAMILY_NAME);
	if (r < 0) {
		nl_socket_free(sk);
		return r == -NLE_OBJ_NOTFOUND ? -ENOENT : nlerr_to_errno(r);
	}
	*ret_family = r;
	*ret_sk = sk;
	return 0;
}

int nbd_nl_family_present(void)
{
	struct nl_sock *sk;
	int family;
	int r = open_socket(&sk, &family);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	nl_socket_free(sk);
	return 1;
}

static int on_valid(struct nl_msg *msg, void *arg)
{
	struct nl_result *res = arg;
	struct nlattr *attrs[NBD_ATTR_MAX + 1];

	if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, NBD_ATTR_MAX, NULL) < 0)
		return NL_OK;
	if (attrs[NBD_ATTR_INDEX]) {
		res->index = nla_get_u32(attrs[NBD_ATTR_INDEX]);
		res->have_index = true;
	}
	return NL_OK;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
	((struct nl_result *)arg)->done = true;
	return NL_STOP;
}

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
	struct nl_result *res = arg;

	res->error = e->error < 0 ? e->error : -e->error;
	res->done = true;
	return NL_STOP;
}

/* Send @msg and wait for its acknowledgement; replies go to on_valid. */
static int transact(struct nl_sock *sk, struct nl_msg *msg, struct nl_result *res)
{
	int r;

	nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_valid, res);
	nl_socket_modify_cb(sk, NL_CB_ACK, NL_CB_CUSTOM, on_ack, res);
	nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, on_error, res);
	r = nl_send_auto(sk, msg);
	if (r < 0)
		return nlerr_to_errno(r);
	while (!res->done) {
		r = nl_recvmsgs_default(sk);
		if (r < 0 && !res->done)
			return nlerr_to_errno(r);
	}
	return res->error;
}

static int put_sockets(struct nl_msg *msg, const int *fds, unsigned nfds)
{
	struct nlattr *socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);

	if (!socks)
		return -ENOMEM;
	for (unsigned i = 0; i < nfds; i++) {
		struct nlattr *item = nla_nest_start(msg, NBD_SOCK_ITEM);

		if (!item || nla_put_u32(msg, NBD_SOCK_FD, (uint32_t)fds[i]) < 0)
			return -ENOMEM;
		nla_nest_end(msg, item);
	}
	nla_nest_end(msg, socks);
	return 0;
}

static int put_connect_attrs(struct nl_msg *msg, const struct nbd_nl_connect *a)
{
	/* The index is left out to let the kernel choose: -1 is refused. */
	if (a->have_index && nla_put_u32(msg, NBD_ATTR_INDEX, a->index) < 0)
		return -ENOMEM;
	if (nla_put_u64(msg, NBD_ATTR_SIZE_BYTES, a->size) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_BLOCK_SIZE_BYTES, a->block_size) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_TIMEOUT, a->timeout) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, a->dead_conn_timeout) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_SERVER_FLAGS, a->server_flags) < 0 ||
	    nla_put_string(msg, NBD_ATTR_BACKEND_IDENTIFIER, a->backend_id) < 0)
		return -ENOMEM;
	return put_sockets(msg, a->fds, a->nfds);
}

static int new_message(int family, uint8_t cmd, struct nl_msg **ret)
{
	struct nl_msg *msg = nlmsg_alloc();

	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, cmd, NBD_GENL_VERSION)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	*ret = msg;
	return 0;
}

int nbd_nl_connect(const struct nbd_nl_connect *a, uint32_t *ret_index)
{
	__attribute__((cleanup(sock_freep))) struct nl_sock *sk = NULL;
	__attribute__((cleanup(msg_freep))) struct nl_msg *msg = NULL;
	struct nl_result res = { 0 };
	int family, r;

	r = open_socket(&sk, &family);
	if (r >= 0)
		r = new_message(family, NBD_CMD_CONNECT, &msg);
	if (r >= 0)
		r = put_connect_attrs(msg, a);
	if (r >= 0)
		r = transact(sk, msg, &res);
	if (r < 0)
		return r;
	if (!res.have_index)
		return -EPROTO; /* connected, but to which device? */
	*ret_index = res.index;
	return 0;
}

int nbd_nl_disconnect(uint32_t index)
{
	__attribute__((cleanup(sock_freep))) struct nl_sock *sk = NULL;
	__attribute__((cleanup(msg_freep))) struct nl_msg *msg = NULL;
	struct nl_result res = { 0 };
	int family, r;

	r = open_socket(&sk, &family);
	if (r >= 0)
		r = new_message(family, NBD_CMD_DISCONNECT, &msg);
	if (r >= 0 && nla_put_u32(msg, NBD_ATTR_INDEX, index) < 0)
		r = -ENOMEM;
	if (r >= 0)
		r = transact(sk, msg, &res);
	return r;
}

int nbd_nl_reconfigure(const struct nbd_nl_connect *a)
{
	__attribute__((cleanup(sock_freep))) struct nl_sock *sk = NULL;
	__attribute__((cleanup(msg_freep))) struct nl_msg *msg = NULL;
	struct nl_result res = { 0 };
	int family, r;

	r = open_socket(&sk, &family);
	if (r >= 0)
		r = new_message(family, NBD_CMD_RECONFIGURE, &msg);
	/* The kernel insists on the identifier the device was connected with. */
	if (r >= 0 && (nla_put_u32(msg, NBD_ATTR_INDEX, a->index) < 0 ||
		       nla_put_string(msg, NBD_ATTR_BACKEND_IDENTIFIER, a->backend_id) < 0 ||
		       nla_put_u64(msg, NBD_ATTR_TIMEOUT, a->timeout) < 0 ||
		       nla_put_u64(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, a->dead_conn_timeout) < 0))
		r = -ENOMEM;
	if (r >= 0 && a->nfds > 0)
		r = put_sockets(msg, a->fds, a->nfds);
	if (r >= 0)
		r = transact(sk, msg, &res);
	return r;
}
