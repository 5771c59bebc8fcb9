// Cache-directory rules of the model store (no download here: the real
// `kvforge pull` is exercised by tests/python/test_pull.py).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "util/error.h"
#include "util/model_store.h"

namespace fs = std::filesystem;

namespace {

// Sets an environment variable for the scope of a test, restoring it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) ::setenv(name, value, 1); else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1); else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "kvforge-test-XXXXXX").string();
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

}  // namespace

TEST(ModelStore, CacheDirHonoursXdgCacheHome) {
  fs::path tmp = make_temp_dir();
  ScopedEnv xdg("XDG_CACHE_HOME", tmp.c_str());
  EXPECT_EQ(fs::path(kvforge::cache_dir()), tmp / "kvforge");
  EXPECT_TRUE(fs::is_directory(tmp / "kvforge"));
  EXPECT_EQ(fs::path(kvforge::default_model_path()), tmp / "kvforge" / "SmolLM2-135M-Instruct.Q4_1.gguf");
  fs::remove_all(tmp);
}

TEST(ModelStore, CacheDirFallsBackToHome) {
  fs::path tmp = make_temp_dir();
  ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  ScopedEnv home("HOME", tmp.c_str());
  EXPECT_EQ(fs::path(kvforge::cache_dir()), tmp / ".cache" / "kvforge");
  fs::remove_all(tmp);
}

TEST(ModelStore, RelativeXdgCacheHomeIsIgnored) {
  fs::path tmp = make_temp_dir();
  ScopedEnv xdg("XDG_CACHE_HOME", "relative/cache");
  ScopedEnv home("HOME", tmp.c_str());
  EXPECT_EQ(fs::path(kvforge::cache_dir()), tmp / ".cache" / "kvforge");
  fs::remove_all(tmp);
}

TEST(ModelStore, ExplicitModelPathMustExist) {
  EXPECT_THROW(kvforge::resolve_model_path("/nonexistent/model.gguf"), kvforge::Error);
  fs::path tmp = make_temp_dir();
  EXPECT_THROW(kvforge::resolve_model_path(tmp.string()), kvforge::Error);  // a directory
  fs::path f = tmp / "m.gguf";
  { std::FILE* fp = std::fopen(f.c_str(), "wb"); std::fclose(fp); }
  EXPECT_EQ(kvforge::resolve_model_path(f.string()), f.string());
  fs::remove_all(tmp);
}
