// server/peer_watch.h: whether the client of a request still being handled has closed its
// connection, for non-streaming requests (a streaming one notices at its next write).
//
// Debian's cpp-httplib (0.11) gives a handler no access to its socket, nor the
// Request::is_connection_closed of later versions. The handler runs on the thread that
// owns the connection, so its socket stays open meanwhile: it is found once among the
// process's descriptors by the request's two endpoints (local and remote address and
// port, unique to one TCP connection), then checked as later cpp-httplib does: readable,
// and a peek reads end-of-stream (or an error). Bytes waiting (a pipelined request) mean
// the client is still there.
#pragma once

#include <httplib.h>

namespace kestrel_server {

class PeerWatch {
 public:
  explicit PeerWatch(const httplib::Request& request);
  // True once the peer has closed (or reset) the connection; false while it is open or
  // when the socket could not be found (nothing is assumed then).
  bool closed() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace kestrel_server
