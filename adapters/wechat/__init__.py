"""What WeCom, 微信客服 and Official Accounts share: callback AES crypto, XML fields, signing."""
