print("camclass")
