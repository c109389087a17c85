import XCTest
@testable import FinchFormats
final class FormatsPlaceholderTests: XCTestCase { func testPlaceholder() {} }
