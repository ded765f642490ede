"""Commands around the loop: chat, export, import, judge a file."""
