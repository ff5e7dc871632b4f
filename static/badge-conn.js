// badge-conn.js: the iframe badge's own connection state. Its status part
// says whether the server reaches its store; this says whether the badge
// reaches the server. htmx's SSE extension fires sseError on the badge when
// its stream drops (it retries by itself) and sseOpen when it is back, and
// the stream's snapshot then replaces the status. Meanwhile the badge is
// marked reconnecting, as the custom element's is: the presence is dimmed.
document.addEventListener("htmx:sseError", (e) => {
  const badge = e.target.closest(".gp-badge");
  if (!badge || badge.classList.contains("gp-reconnecting")) return;
  badge.classList.add("gp-reconnecting");
  const status = badge.querySelector(".gp-status");
  status.textContent = "Reconnecting…";
  const dot = document.createElement("span");
  dot.className = "gp-dot gp-stale";
  status.prepend(dot);
});
document.addEventListener("htmx:sseOpen", (e) => {
  e.target.closest(".gp-badge")?.classList.remove("gp-reconnecting");
});
