#include "frontend/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <charconv>
#include <filesystem>
#include <string>

namespace kvforge::cli {

namespace {

// The port of an IPv4/IPv6 address and its numeric text; port -1 otherwise.
int port_of(const sockaddr_storage& a, std::string* text) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    if (text) *text = inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf) ? buf : "";
    return ntohs(in.sin_port);
  }
  if (a.ss_family == AF_INET6) {
    const auto& in = reinterpret_cast<const sockaddr_in6&>(a);
    if (text) *text = inet_ntop(AF_INET6, &in.sin6_addr, buf, sizeof buf) ? buf : "";
    return ntohs(in.sin6_port);
  }
  return -1;
}

bool is_connection_of(int fd, const httplib::Request& req) {
  sockaddr_storage local{}, peer{};
  socklen_t n = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0 || port_of(local, nullptr) != req.local_port)
    return false;
  n = sizeof peer;
  std::string peer_addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &n) != 0 || port_of(peer, &peer_addr) != req.remote_port)
    return false;
  // httplib writes the address numerically; an IPv4 peer on an IPv6 socket
  // may read "::ffff:a.b.c.d" on one side only.
  return peer_addr == req.remote_addr || peer_addr.ends_with(":" + req.remote_addr) ||
         req.remote_addr.ends_with(":" + peer_addr);
}

}  // namespace

ConnectionWatch::ConnectionWatch(const httplib::Request& req) {
  if (req.remote_port < 0 || req.local_port < 0) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const std::string name = entry.path().filename().string();
    int fd = -1;
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) continue;
    if (is_connection_of(fd, req)) {
      fd_ = fd;
      return;
    }
  }
}

bool ConnectionWatch::gone() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
  // Readable: either the next pipelined request (alive) or end of stream.
  char c;
  return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace kvforge::cli
