def process_request(request):
    '''If present, this function executes when an HTTP request arrives.'''
    return {"handled_by": "request_handler.py", "path": request.path}
