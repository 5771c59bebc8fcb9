#pragma once
// Whether the client of a request being handled has gone away, for handlers
// that wait a long time before they answer (a non-streamed completion).
// cpp-httplib 0.11 (Debian 12) gives a handler no way to see its connection
// (newer releases have Request::is_connection_closed), so the socket is found
// once among the process's descriptors by the connection's two ports and the
// peer's address, then peeked without reading anything.
#include <httplib.h>

namespace kvforge::cli {

class ConnectionWatch {
 public:
  explicit ConnectionWatch(const httplib::Request& req);
  // True once the peer closed or reset the connection. Never true when the
  // socket was not found (then a gone client is noticed at the write).
  bool gone() const;

 private:
  int fd_ = -1;
};

}  // namespace kvforge::cli
