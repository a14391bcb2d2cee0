// The page's only script: start the player at the moment asked for, and seek it from the curves and flags.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (!player) return;
  const seek = (t) => {
    if (!Number.isFinite(t)) return;
    const go = () => { player.currentTime = Math.max(0, t); };
    if (player.readyState >= 1) go(); else player.addEventListener("loadedmetadata", go, { once: true });
  };
  seek(parseFloat(player.dataset.start || "0"));
  const curves = document.querySelector(".curves svg");
  if (curves) {
    curves.addEventListener("click", (e) => {
      const box = curves.getBoundingClientRect();
      seek((e.clientX - box.left) / box.width * player.duration);
    });
  }
  document.querySelectorAll("a.seek").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    seek(parseFloat(a.dataset.t));
    player.play().catch(() => {});
  }));
});
