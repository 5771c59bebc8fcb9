#pragma once
// Figures are drawn by gnuplot (Debian gnuplot-nox): the data and the script
// are written next to the PNG, so a figure can be redrawn or restyled.
#include <functional>
#include <string>

namespace kvforge {

// The script for a data file and a PNG path.
using GnuplotScript = std::function<std::string(const std::string& data_path, const std::string& png_path)>;

// Writes DIR/STEM.dat and DIR/STEM.gp and runs gnuplot on it to draw
// DIR/STEM.png. Throws kvforge::Error if gnuplot is missing (naming the
// package) or fails.
void draw_with_gnuplot(const std::string& dir, const std::string& stem, const std::string& data,
                       const GnuplotScript& script);

}  // namespace kvforge
