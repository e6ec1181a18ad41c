// fermap's book: click a figure to see it at its own size, click again (or Escape) to close.
// Plain DOM, no library: the book reads offline.
document.addEventListener("click", (event) => {
  const open = document.querySelector(".fermap-zoom");
  if (open) { open.remove(); return; }
  const img = event.target.closest("div.cell_output img");
  if (!img) return;
  const layer = document.createElement("div");
  layer.className = "fermap-zoom";
  const big = document.createElement("img");
  big.src = img.src;
  big.alt = img.alt;
  // its own pixels, or twice the size shown in the column where that is larger
  big.style.width = Math.max(img.naturalWidth, 2 * img.width) + "px";
  layer.appendChild(big);
  document.body.appendChild(layer);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.querySelector(".fermap-zoom")?.remove();
});
