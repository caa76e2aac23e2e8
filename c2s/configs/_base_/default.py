_base_ = ["./method.py", "./teacher.py", "./schedules/default.py"]
