// MathJax 3 configuration for pymdownx.arithmatex (generic mode): it wraps $...$ and $$...$$
// in <span class="arithmatex">\(...\)</span> / <div class="arithmatex">\[...\]</div>.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
