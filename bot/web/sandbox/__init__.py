"""A fake WeCom and 微信客服 API inside `bot up`: a new user tries the bot without an account."""
