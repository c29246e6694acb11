// The web chat as a floating button on any site:
//   <script src="https://BOT_HOST/widget.js" data-title="在线客服" async></script>
// It adds a button at the bottom right that opens the chat page of the same host in a
// frame. Nothing else of the host page is read or changed.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__botChatWidget) return;
  window.__botChatWidget = true;
  var origin = new URL(script.src).origin;
  // The default title is BOT_WEBCHAT_TITLE, written in by the server (bot/web/chat.py).
  var title = script.getAttribute("data-title") || /*TITLE*/"在线客服";
  var color = script.getAttribute("data-color") || "#2563eb";

  var button = document.createElement("button");
  button.type = "button";
  button.textContent = title;
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", "bot-chat-frame");
  button.style.cssText =
    "position:fixed;right:20px;bottom:20px;z-index:2147483646;padding:12px 18px;border:0;" +
    "border-radius:24px;background:" + color + ";color:#fff;font:15px/1.2 system-ui,-apple-system," +
    "'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;box-shadow:0 4px 14px rgba(0,0,0,.2);" +
    "cursor:pointer";

  var frame = document.createElement("iframe");
  frame.id = "bot-chat-frame";
  frame.title = title;
  frame.style.cssText =
    "position:fixed;right:20px;bottom:76px;z-index:2147483647;width:min(380px,calc(100vw - 40px));" +
    "height:min(600px,calc(100vh - 100px));border:0;border-radius:12px;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.25);background:#fff;display:none";

  button.addEventListener("click", function () {
    var open = frame.style.display === "none";
    if (open && !frame.src) frame.src = origin + "/?embed=1";
    frame.style.display = open ? "block" : "none";
    button.setAttribute("aria-expanded", String(open));
  });
  document.body.appendChild(frame);
  document.body.appendChild(button);
})();
