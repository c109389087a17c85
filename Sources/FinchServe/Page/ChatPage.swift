import Hummingbird

/// The browser chat served at `/` (one self-contained page: no CDN, works offline).
enum ChatPage {
    static func response() -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = "<!doctype html><title>Finch</title>"
}
